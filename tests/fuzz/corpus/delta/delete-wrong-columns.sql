CREATE TABLE _snapfs_delete_items(body TEXT PRIMARY KEY);
INSERT INTO _snapfs_delete_items VALUES ('one');
