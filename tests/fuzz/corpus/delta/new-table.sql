CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT NOT NULL, n NUMERIC, r REAL, b BLOB, x, w VARCHAR(10));
INSERT INTO lines VALUES (1, 'a', '12', 1.0, x'00ff', NULL, 'w'), (2, 'b', 3, 2, 'x', 4, NULL);
CREATE INDEX lines_doc ON lines(doc);
CREATE UNIQUE INDEX lines_w ON lines(w);
