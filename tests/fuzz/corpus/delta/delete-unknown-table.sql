CREATE TABLE _snapfs_delete_nosuch(id INTEGER PRIMARY KEY);
CREATE TABLE _snapfs_delete_(x PRIMARY KEY);
