CREATE TABLE kv(k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID;
INSERT INTO kv VALUES ('a', x'01'), ('c', 'text'), ('d', 4.5);
CREATE TABLE _snapfs_delete_kv(k TEXT PRIMARY KEY) WITHOUT ROWID;
INSERT INTO _snapfs_delete_kv VALUES ('b');
