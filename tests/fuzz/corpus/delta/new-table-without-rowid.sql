CREATE TABLE tags(name TEXT, ord INT, note, PRIMARY KEY(ord, name)) WITHOUT ROWID;
INSERT INTO tags VALUES ('t', 1, 'n'), ('u', 2, NULL);
