PRAGMA encoding = 'UTF-16le';
CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT);
INSERT INTO items VALUES (9, 'nine');
