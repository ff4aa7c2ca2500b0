-- one database per party (the replicas' leases live in each party's own)
CREATE DATABASE agency;
CREATE DATABASE acme;
