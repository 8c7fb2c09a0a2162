CREATE TABLE _snapfs_delete_pairs(a INTEGER, b TEXT, PRIMARY KEY(a, b));
INSERT INTO _snapfs_delete_pairs VALUES (1, 'x'), ('2', 'y');
CREATE TABLE _snapfs_delete_kv(k PRIMARY KEY);
INSERT INTO _snapfs_delete_kv VALUES ('a');
