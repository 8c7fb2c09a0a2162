CREATE TABLE _snapfs_ledger(seq INTEGER PRIMARY KEY, sha256 TEXT, name TEXT, applied_at INTEGER);
INSERT INTO _snapfs_ledger VALUES (2, 'x', 'y', 0);
