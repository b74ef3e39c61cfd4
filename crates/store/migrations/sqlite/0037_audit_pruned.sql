-- The pruned prefix of the audit log (issue 17 goal 6: exported tiles dropped from the
-- hot database). Records below `through` were exported (`bonafide audit export`) and
-- deleted by `Store::audit_prune`, except the last record of each tile of 256
-- (idx % 256 = 255), which keeps its leaf hash and nodes (its entry emptied): every
-- hash at level 8 and above stays, and with it each tile's root, against which the
-- server checks every tile it reads back from the export. One row; absent means 0.
CREATE TABLE audit_pruned (
    id      INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    through INTEGER NOT NULL CHECK (through >= 0 AND through % 256 = 0)
);
