"""The tenant registry: creating tenants and changing their tier."""
