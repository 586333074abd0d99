"""One adapter per cloud API. Each speaks the product's domain types (dataclasses), never returns SDK
models, and turns SDK failures into `shared.errors` exceptions at its boundary."""
