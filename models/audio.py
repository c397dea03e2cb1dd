"""Audio conventions shared by the model layer and the streaming runtime."""

SAMPLE_RATE = 16_000  # Hz; every frontend and every streaming stage after the source works at this rate
