-- The revisioned key-value log. Every change is one row; rows are never updated.
-- id packs the store revision and the change's position inside that revision's
-- transaction: id = revision << 20 | position. So rows sort in commit order, and
-- "everything at or before revision R" is simply id < (R + 1) << 20.
CREATE TABLE kv (
  id              INTEGER PRIMARY KEY,
  key             BLOB    NOT NULL,
  create_revision INTEGER NOT NULL,  -- 0 on a tombstone
  version         INTEGER NOT NULL,  -- 0 on a tombstone (a delete)
  lease           INTEGER NOT NULL,
  value           BLOB    NOT NULL,
  prev_id         INTEGER NOT NULL   -- id of the live row this one replaces, 0 if the key was not live
);
-- (key, id): the latest row of a key at any revision is one index seek.
CREATE INDEX kv_key ON kv (key);

-- The live keys at the newest revision and their current row: lists and counts at
-- the newest revision read only this table, never the history.
CREATE TABLE live (
  key   BLOB    PRIMARY KEY,
  id    INTEGER NOT NULL,
  lease INTEGER NOT NULL  -- copied from the row, so a lease's keys are one index lookup
) WITHOUT ROWID;
CREATE INDEX live_lease ON live (lease) WHERE lease != 0;

CREATE TABLE lease (
  id  INTEGER PRIMARY KEY,
  ttl INTEGER NOT NULL
);

-- Store-wide numbers: 'compact_revision' (reads below it are refused),
-- 'compacted_through' (how far the incremental compactor has deleted history),
-- 'cluster_id' and 'member_id' (stable identities reported by the etcd endpoint).
CREATE TABLE meta (
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (name, value) VALUES
  ('compact_revision', 0),
  ('compacted_through', 0),
  ('cluster_id', abs(random() >> 1)),
  ('member_id', abs(random() >> 1));
