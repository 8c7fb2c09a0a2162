/* seal: placeholder, being written */
