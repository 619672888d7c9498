-- dim_annotation: the annotations calendar of the current configuration (releases, incidents, launches).
-- Grain: annotation_id. Key: annotation_id.
-- Upstream: config.annotations (the current version: effective_to is NULL).
-- Rebuilt whole on every build: an annotation recorded after the fact explains past days too. Join it
-- to a signal by day and project: usage_date between start_date and end_date, project in (p, '*'),
-- list_contains(signals, 'spend'). expected_change is the multiple of the signal's level before start_date the
-- annotation announces (NULL: a rise of any size); it explains a move only in that direction and size.
with
current_version as (
    select config_version_id from config.config_versions where effective_to is null
),

final as (
    select
        annotation_id,
        kind,
        start_date,
        end_date,
        project,
        signals,
        description,
        expected_change,
        config_version_id
    from config.annotations
    where config_version_id = (select config_version_id from current_version)
)

select * from final
