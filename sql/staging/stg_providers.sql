-- stg_providers: provider display names (as in /activity) and routing slugs, newest snapshot.
-- Grain: provider_name. Key: provider_name.
-- Source: raw.providers.
with
source as (
    select * from raw.providers
),

typed as (
    select
        provider_name,
        payload ->> 'slug' as provider_slug,
        payload ->> 'headquarters' as headquarters,
        payload ->> 'privacy_policy_url' as privacy_policy_url,
        payload ->> 'status_page_url' as status_page_url,
        partition_date as snapshot_date,
        fetched_at
    from source
),

latest as (
    select * from typed
    qualify row_number() over (partition by provider_name order by snapshot_date desc, fetched_at desc) = 1
)

select * from latest
