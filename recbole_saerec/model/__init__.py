"""The plugin's models, one per file (registered in recbole_saerec.utils.PLUGIN_MODELS)."""
