//! A wire-faithful emulator of the ECI OpenAPI (2018-08-08).
