CREATE TABLE t(id INTEGER PRIMARY KEY, v);
INSERT INTO t VALUES (1, 2);
PRAGMA writable_schema = ON;
UPDATE sqlite_schema SET sql = 'CREATE TABLE t(id INTEGER PRIMARY KEY, v, w AS (v * 2))' WHERE name = 't';
PRAGMA writable_schema = OFF;
