CREATE TABLE t(id INTEGER PRIMARY KEY, v);
PRAGMA writable_schema = ON;
UPDATE sqlite_schema SET type = 'index' WHERE name = 't';
INSERT INTO sqlite_schema VALUES ('trigger', 'x', 't', 0, NULL);
