-- The site-view card aggregates today's cycles per machine and payload bin: this index answers it with an
-- index-only range scan over today (no visits to the table's rows), whatever the length of the history.
CREATE INDEX IF NOT EXISTS cycles_site_dumped_card ON weight_loading.cycles (site_id, dumped_at)
    INCLUDE (machine_id, payload_kg, rated_payload_kg);
