//! The ECI OpenAPI (2018-08-08) client: signing, typed actions, retries, pacing.
