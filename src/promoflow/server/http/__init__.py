"""The HTTP edge: the app factory, authentication and the unit of work, middleware, rate limiting, idempotency
keys, error mapping and the OpenAPI helpers. Feature packages hold the routes; this package holds what every
route shares."""
