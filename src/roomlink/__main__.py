from roomlink.cli.main import main

raise SystemExit(main())
