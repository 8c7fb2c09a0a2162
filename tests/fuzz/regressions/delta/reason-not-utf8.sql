CREATE TABLE "tÿþ"(a, b);
INSERT INTO "tÿþ" VALUES (1, 2);
