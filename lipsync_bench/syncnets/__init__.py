"""The sync experts: SyncNet (Chung & Zisserman, for LSE-C/LSE-D), Wav2Lip's SyncNet and the paper's
AVSyncNet — their networks and checkpoint layouts, their inputs (crop geometry, mel and MFCC windows)
and the scoring of a video against its audio (LSE). Used by the LSE metrics and, through
``research``, by training and the studies; nothing here reads training data."""
