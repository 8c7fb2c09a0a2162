PRAGMA page_size = 512;
CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT);
INSERT INTO items VALUES (3, 'three'), (4, printf('%.600c', 'x'));
