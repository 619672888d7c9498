-- stg_workspaces: every workspace ever seen, newest snapshot.
-- Grain: workspace_id. Key: workspace_id.
-- Source: raw.workspaces.
with
source as (
    select * from raw.workspaces
),

typed as (
    select
        workspace_id,
        payload ->> 'name' as workspace_name,
        payload ->> 'slug' as workspace_slug,
        payload ->> 'description' as description,
        cast(payload ->> 'created_at' as timestamptz) as created_at,
        partition_date as snapshot_date,
        fetched_at
    from source
),

latest as (
    select * from typed
    qualify row_number() over (partition by workspace_id order by snapshot_date desc, fetched_at desc) = 1
)

select * from latest
