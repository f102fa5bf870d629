"""ALFRED: automated ECG delineation and feature extraction (U-Net delineator and tools)."""
