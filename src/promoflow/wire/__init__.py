"""Wire formats shared by the server and the SDK: Engage JSON models and the XML file formats."""
