-- stg_request_log: every line the applications' request logs hold, as loaded (an id logged more than once
-- has a row per line; fct_generations keeps one of them).
-- Grain: one logged line. Key: log_row.
-- Source: raw.request_log (typed by the loader; quarantined lines are not here).
-- log_row identifies the line within a build (the table's rowid), so a mart can pick one line per id with a
-- narrow aggregate and join the whole line back.
with
source as (
    select rowid as log_row, * from raw.request_log
)

select * from source
