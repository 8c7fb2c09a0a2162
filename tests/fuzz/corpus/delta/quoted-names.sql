CREATE TABLE "we""ird [t].a"("a b" TEXT PRIMARY KEY, "c.d" INT, "main", "rowid", "oid", "temp");
INSERT INTO "we""ird [t].a" VALUES ('k', 1, 2, 3, 4, 5);
CREATE TABLE "main"("x" PRIMARY KEY, "excluded");
INSERT INTO "main" VALUES (1, 2);
