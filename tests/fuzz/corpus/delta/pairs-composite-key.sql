CREATE TABLE pairs(a INTEGER, b TEXT, n REAL, PRIMARY KEY(a, b));
INSERT INTO pairs VALUES (1, 'x', 2.5), (3, 'z', NULL), ('1', 'w', '7');
CREATE TABLE _snapfs_delete_pairs(b TEXT, a INTEGER, PRIMARY KEY(a, b));
INSERT INTO _snapfs_delete_pairs VALUES ('y', 2);
