"""HTTP edge shared by the API functions: route declaration, validation, error mapping and the OpenAPI document."""
