CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT);
INSERT INTO items VALUES (1, 'new'), (2, 'changed');
CREATE TABLE _snapfs_delete_items(id INTEGER PRIMARY KEY);
INSERT INTO _snapfs_delete_items VALUES (7);
