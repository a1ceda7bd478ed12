-- A reject keeps the first REJECT_PAYLOAD_KEPT bytes of its payload (ingest/writer.py), enough to read what the
-- device sent, and here how long the payload was: kept whole, a device sending bad messages of 1 MiB grew the
-- table by a megabyte each. NULL for rejects stored before this (their payload is whole).
ALTER TABLE ingest_rejects ADD COLUMN IF NOT EXISTS payload_bytes integer;
