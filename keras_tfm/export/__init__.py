"""Exports for serving: TF Serving SavedModels, model versions, CTranslate2."""
