CREATE TABLE t (a TEXT);
INSERT INTO t VALUES ('O'), ('K');
SELECT group_concat(a, '') FROM t;
