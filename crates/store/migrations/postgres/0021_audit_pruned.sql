-- The pruned prefix of the audit log (as SQLite migration 0037). Records below
-- `through` were exported and deleted by `Store::audit_prune`, except the last record
-- of each tile of 256 (idx % 256 = 255), which keeps its leaf hash and nodes (its
-- entry emptied), so every hash at level 8 and above stays. One row; absent means 0.
CREATE TABLE audit_pruned (
    id      SMALLINT NOT NULL CHECK (id = 1),
    through BIGINT   NOT NULL CHECK (through >= 0 AND through % 256 = 0),
    CONSTRAINT audit_pruned_pkey PRIMARY KEY (id)
);
