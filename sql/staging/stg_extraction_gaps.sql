-- stg_extraction_gaps: the permanent gaps, days an endpoint can never be captured for (they left the API's
-- 30-day window before a run fetched them); recorded by the quality gate.
-- Grain: gap_date × endpoint. Key: gap_date, endpoint.
-- Source: meta.extraction_gaps.
with
source as (
    select * from meta.extraction_gaps
),

renamed as (
    select
        partition_date as gap_date,
        endpoint,
        reason
    from source
)

select * from renamed
