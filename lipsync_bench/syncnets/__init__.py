"""Sync experts: SyncNet (Chung & Zisserman, for LSE-C/LSE-D); Wav2Lip's SyncNet and AVSyncNet next."""
