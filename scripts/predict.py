"""One image, one command: `python scripts/predict.py IMAGE --run runs/demo` (see sdmad.predict)."""

from sdmad.predict import main

if __name__ == "__main__":
    main()
