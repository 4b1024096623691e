"""HTTP surface: small blueprints; each view parses, calls a service, renders."""
