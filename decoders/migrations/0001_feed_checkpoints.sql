-- Where each HTTP feed (decoders/feeds.py) stands: saved after the batch it describes has committed.
CREATE TABLE IF NOT EXISTS decoder_feed_checkpoints (
    feed text PRIMARY KEY,
    site_id text NOT NULL,
    decoder text NOT NULL,
    cursor jsonb NOT NULL DEFAULT '{}',
    polls bigint NOT NULL DEFAULT 0,
    last_error text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
