from lora_tui.cli import main

raise SystemExit(main())
