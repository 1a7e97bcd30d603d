"""Language-model helpers for pipelines: data preparation and evaluation (pure Python here;
the parts that need torch live in modules of their own and import it when called)."""
