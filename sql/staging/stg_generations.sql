-- stg_generations: every generation id the /generation enrichment knows of: its queue status and, once
-- fetched, its /generation record.
-- Grain: generation_id. Key: generation_id.
-- Source: meta.generation_queue (ids without openrouter_metadata and what became of their lookup),
--   raw.generations (the newest /generation record of each id; payload = the response's `data`).
-- queue_status is NULL for a record fetched without a queue entry; payload is NULL until the record is fetched.
with
queue as (
    select generation_id, usage_date, status from meta.generation_queue
),

records as (
    select generation_id, usage_date, fetched_at, payload from raw.generations
),

final as (
    select
        ---------- keys
        generation_id,
        coalesce(records.usage_date, queue.usage_date) as usage_date,
        ---------- enrichment
        queue.status as queue_status,
        records.fetched_at,
        records.payload
    from queue
    full outer join records using (generation_id)
)

select * from final
