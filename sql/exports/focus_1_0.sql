-- focus_1_0: one UTC day of OpenRouter charges as FOCUS 1.0 cost-and-usage rows (the column set that the
-- FinOps Foundation's focus-validator 1.0.0 checks), with OpenRouter specifics in x_-prefixed columns.
-- Grain: one Usage row per usage_date × api_key_hash × model_permaslug × provider_name (marts.fct_daily_spend),
--        plus one Purchase row when credits were topped up that day (marts.fct_credit_balance.topup_usd > 0).
-- Key: (ChargeCategory, ResourceID, SkuPriceId) — SkuPriceId is '<model permaslug>@<provider>' for usage.
-- Upstream: marts.fct_daily_spend, marts.fct_credit_balance, marts.fct_generations (fallback counts, if loaded).
-- Parameters (DuckDB variables): focus_day DATE, focus_billing_account_id, focus_billing_account_name VARCHAR.
-- FOCUS names its columns in PascalCase (BilledCost, ChargeCategory, ...), so identifier case is not linted:
-- noqa: disable=CP02
--
-- Money follows FOCUS's prepaid model so that nothing is counted twice:
--   * a credit top-up is a Purchase: BilledCost = ListCost = ContractedCost = the amount paid, EffectiveCost = 0
--     (the purchase covers future usage and is amortised into it);
--   * inference paid from those credits is Usage: BilledCost = 0 (already paid at purchase),
--     EffectiveCost = ListCost = ContractedCost = the credits spent (spend_usd, BYOK fees included).
--   Σ BilledCost is therefore cash paid to OpenRouter and Σ EffectiveCost is consumption.
--   * BYOK inference is billed by the provider directly: it is in no FOCUS cost column, only in
--     x_byok_provider_billed_cost_usd (OpenRouter's estimate at market rates), flagged by x_is_byok.
with
params as (
    select
        getvariable('focus_day')::date as charge_day,
        getvariable('focus_billing_account_id')::varchar as billing_account_id,
        getvariable('focus_billing_account_name')::varchar as billing_account_name
),

periods as (
    select
        *,
        charge_day::timestamptz as charge_start,
        (charge_day + interval 1 day)::timestamptz as charge_end,
        date_trunc('month', charge_day)::timestamptz as billing_start,
        (date_trunc('month', charge_day) + interval 1 month)::timestamptz as billing_end
    from params
),

-- Per-request records, when the per-request data covers the day: fallbacks per key, model and provider.
generations as (
    select
        g.api_key_hash,
        g.served_model,
        g.provider_name,
        count(*) as generation_records,
        count(*) filter (where g.is_fallback) as fallback_requests
    from marts.fct_generations as g, params as p
    where g.usage_date = p.charge_day
    group by all
),

usage_rows as (
    select
        s.*,
        coalesce(sum(g.generation_records), 0) as generation_records,
        sum(g.fallback_requests) as fallback_requests
    from marts.fct_daily_spend as s
    inner join params as p on s.usage_date = p.charge_day
    left join generations as g
        on g.api_key_hash = s.api_key_hash
        and g.provider_name = s.provider_name
        and g.served_model in (s.model, s.model || ':free')
    group by all
),

usage_charges as (
    select
        'Usage' as ChargeCategory,
        u.spend_usd as EffectiveCost,
        0.0::double as BilledCost,
        u.spend_usd as ListCost,
        u.spend_usd as ContractedCost,
        'Usage-Based' as ChargeFrequency,
        'Inference: ' || u.model || ' served by ' || u.provider_name || ' for key '
            || coalesce(u.api_key_name, u.api_key_hash) || ', ' || u.requests || ' requests, paid from prepaid credits'
            || case when u.byok_spend_usd > 0
                    then '; BYOK inference billed by ' || u.provider_name || ' directly is not included'
                    else '' end as ChargeDescription,
        (u.prompt_tokens + u.completion_tokens)::double as ConsumedQuantity,
        'Tokens' as ConsumedUnit,
        (u.prompt_tokens + u.completion_tokens)::double as PricingQuantity,
        'Tokens' as PricingUnit,
        null::double as ListUnitPrice,
        null::double as ContractedUnitPrice,
        split_part(u.model, '/', 1) as Publisher,
        u.api_key_hash as ResourceID,
        u.api_key_name as ResourceName,
        'API Key' as ResourceType,
        u.model_permaslug as SkuId,
        u.model_permaslug || '@' || u.provider_name as SkuPriceId,
        u.workspace_id as SubAccountId,
        u.workspace_name as SubAccountName,
        to_json({project: u.project, team: u.team, budget_owner: u.budget_owner})::varchar as Tags,
        u.usage_date as x_usage_date,
        'prepaid_credits' as x_payment,
        u.project as x_project,
        u.team as x_team,
        u.budget_owner as x_budget_owner,
        u.is_owned as x_is_owned,
        u.model as x_model,
        u.model_permaslug as x_model_permaslug,
        u.provider_name as x_served_by_provider,
        u.is_premium as x_is_premium,
        u.premium_reason as x_premium_reason,
        u.requests as x_requests,
        u.prompt_tokens as x_prompt_tokens,
        u.completion_tokens as x_completion_tokens,
        u.reasoning_tokens as x_reasoning_tokens,
        u.cached_tokens as x_cached_tokens,
        u.byok_spend_usd > 0 as x_is_byok,
        u.byok_spend_usd as x_byok_provider_billed_cost_usd,
        u.generation_records as x_generation_records,
        case when u.generation_records > 0 then u.fallback_requests end as x_fallback_requests
    from usage_rows as u
),

purchase_charges as (
    select
        'Purchase' as ChargeCategory,
        0.0::double as EffectiveCost,
        c.topup_usd as BilledCost,
        c.topup_usd as ListCost,
        c.topup_usd as ContractedCost,
        'One-Time' as ChargeFrequency,
        'Prepaid OpenRouter credits purchased (top-up); consumed by the Usage rows of this and later days'
            as ChargeDescription,
        null::double as ConsumedQuantity,
        null::varchar as ConsumedUnit,
        c.topup_usd as PricingQuantity,
        'USD of credits' as PricingUnit,
        1.0::double as ListUnitPrice,
        1.0::double as ContractedUnitPrice,
        'OpenRouter' as Publisher,
        null::varchar as ResourceID,
        null::varchar as ResourceName,
        null::varchar as ResourceType,
        'openrouter-credits' as SkuId,
        'openrouter-credits@usd' as SkuPriceId,
        null::varchar as SubAccountId,
        null::varchar as SubAccountName,
        '{}' as Tags,
        c.as_of_date as x_usage_date,
        'credit_purchase' as x_payment,
        null::varchar as x_project,
        null::varchar as x_team,
        null::varchar as x_budget_owner,
        null::boolean as x_is_owned,
        null::varchar as x_model,
        null::varchar as x_model_permaslug,
        null::varchar as x_served_by_provider,
        null::boolean as x_is_premium,
        null::varchar as x_premium_reason,
        null::bigint as x_requests,
        null::bigint as x_prompt_tokens,
        null::bigint as x_completion_tokens,
        null::bigint as x_reasoning_tokens,
        null::bigint as x_cached_tokens,
        null::boolean as x_is_byok,
        null::double as x_byok_provider_billed_cost_usd,
        null::bigint as x_generation_records,
        null::bigint as x_fallback_requests
    from marts.fct_credit_balance as c
    inner join params as p on c.as_of_date = p.charge_day
    where c.topup_usd > 0
),

charges as (
    select * from usage_charges
    union all by name
    select * from purchase_charges
)

select
    null::varchar as AvailabilityZone,
    ch.BilledCost,
    p.billing_account_id as BillingAccountId,
    p.billing_account_name as BillingAccountName,
    'USD' as BillingCurrency,
    p.billing_end as BillingPeriodEnd,
    p.billing_start as BillingPeriodStart,
    ch.ChargeCategory,
    null::varchar as ChargeClass,
    ch.ChargeDescription,
    ch.ChargeFrequency,
    p.charge_end as ChargePeriodEnd,
    p.charge_start as ChargePeriodStart,
    null::varchar as CommitmentDiscountCategory,
    null::varchar as CommitmentDiscountId,
    null::varchar as CommitmentDiscountName,
    null::varchar as CommitmentDiscountStatus,
    null::varchar as CommitmentDiscountType,
    ch.ConsumedQuantity,
    ch.ConsumedUnit,
    ch.ContractedCost,
    ch.ContractedUnitPrice,
    ch.EffectiveCost,
    'OpenRouter' as InvoiceIssuer,
    ch.ListCost,
    ch.ListUnitPrice,
    'Standard' as PricingCategory,
    ch.PricingQuantity,
    ch.PricingUnit,
    'OpenRouter' as Provider,
    ch.Publisher,
    null::varchar as RegionId,
    null::varchar as RegionName,
    ch.ResourceID,
    ch.ResourceName,
    ch.ResourceType,
    'AI and Machine Learning' as ServiceCategory,
    'OpenRouter' as ServiceName,
    ch.SkuId,
    ch.SkuPriceId,
    ch.SubAccountId,
    ch.SubAccountName,
    ch.Tags,
    ch.x_usage_date,
    ch.x_payment,
    ch.x_project,
    ch.x_team,
    ch.x_budget_owner,
    ch.x_is_owned,
    ch.x_model,
    ch.x_model_permaslug,
    ch.x_served_by_provider,
    ch.x_is_premium,
    ch.x_premium_reason,
    ch.x_requests,
    ch.x_prompt_tokens,
    ch.x_completion_tokens,
    ch.x_reasoning_tokens,
    ch.x_cached_tokens,
    ch.x_is_byok,
    ch.x_byok_provider_billed_cost_usd,
    ch.x_generation_records,
    ch.x_fallback_requests
from charges as ch
cross join periods as p
order by ch.ChargeCategory desc, ch.x_project nulls first, ch.ResourceID nulls first, ch.SkuPriceId
