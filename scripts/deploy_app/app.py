"""SD-MAD as a MONAI Deploy app: `python app.py -i <DICOM study or NIfTI folder> -o <output> -m <model folder>`.

The application is sdmad.deploy.app.SDMADApp (bundle/sdmad/deploy/); this file is the entry point the SDK's
packager (`holoscan package`) and the local run use. Run it in the deploy environment (`make deploy-env`).
"""

from sdmad.deploy.app import main

if __name__ == "__main__":
    main()
