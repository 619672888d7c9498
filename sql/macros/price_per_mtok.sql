-- marts.price_per_mtok(price_per_token): a price in USD per token (as the API lists it) in USD per 1M tokens.
-- NULL for a negative price: router models list the sentinel -1, which is not a price.
-- Read by the staging views of model prices (stg_model_snapshots, stg_model_endpoints).
create or replace macro marts.price_per_mtok(price_per_token) as
case when price_per_token >= 0 then price_per_token * 1e6 end
