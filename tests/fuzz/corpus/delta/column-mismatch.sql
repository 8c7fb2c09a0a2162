CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT, extra);
INSERT INTO items VALUES (1, 'a', 'b');
