import sys
from pathlib import Path

# Test helpers (tiny models, tiny tokenizers, reference implementations) live beside the tests.
sys.path.insert(0, str(Path(__file__).parent))
