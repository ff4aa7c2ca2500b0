from roomlink.cli import main

raise SystemExit(main())
