/* fsx: placeholder, being written */
