"""Pure key conversions from the official checkpoint formats to the modules nava-dub builds."""
