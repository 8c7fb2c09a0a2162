CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT);
INSERT INTO items VALUES (1, 'back');
CREATE TABLE _snapfs_delete_items(id INTEGER PRIMARY KEY);
INSERT INTO _snapfs_delete_items VALUES (1), (2);
