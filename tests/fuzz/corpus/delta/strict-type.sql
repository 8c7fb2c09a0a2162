CREATE TABLE strict_t(id INTEGER PRIMARY KEY, n TEXT, u TEXT);
INSERT INTO strict_t VALUES (4, 'four', 'u4'), (5, '5', 'u5');
